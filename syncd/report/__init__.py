"""Reports for cron and for people: coverage, failures, expiring certificates, changes, passes.

``syncd report`` (scheduled by ``systemd/syncd-report.timer``) goes through
:func:`syncd.report.service.produce_report`. The parts:

- :mod:`syncd.report.queries`: rows read from the state store;
- :mod:`syncd.report.model`: the report model, built from those rows by pure functions;
- :mod:`syncd.report.thresholds`: ``--fail-on`` conditions;
- ``render_text``, ``render_csv``, ``render_json``, ``render_html`` (with :mod:`.charts`);
- :mod:`syncd.report.mail`: delivery by email.
"""
