"""The plugin's own tables, beside MLflow's in the same database, with their own migrations.

MLflow stays the system of record (the ``hokusai.*`` tags); these tables index the same facts so
that lineage and contributor queries are single indexed SQL queries.
"""
