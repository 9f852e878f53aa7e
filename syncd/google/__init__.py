"""google"""
