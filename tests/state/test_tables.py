"""The ORM-free views of syncd.state.tables read the models' tables: every column they name
exists in syncd.state.models with the same type, so the read-only queries (status, history,
health) decode values exactly as the ORM would."""

from __future__ import annotations

import pytest
from sqlalchemy import Enum, TableClause

from syncd.state import tables
from syncd.state.models import Base

VIEWS = [
    tables.users,
    tables.key_pairs,
    tables.tasks,
    tables.runs,
    tables.audit_log,
    tables.instances,
]


@pytest.mark.parametrize("view", VIEWS, ids=lambda view: view.name)
def test_view_columns_match_the_models(view: TableClause) -> None:
    model = Base.metadata.tables[view.name]
    for light in view.columns:
        assert light.name in model.columns, f"{view.name}.{light.name} is not in the models"
        heavy = model.columns[light.name].type
        assert type(light.type) is type(heavy), f"{view.name}.{light.name}: {light.type!r}"
        if isinstance(heavy, Enum):
            assert isinstance(light.type, Enum)
            assert light.type.enum_class is heavy.enum_class
            assert light.type.enums == heavy.enums
