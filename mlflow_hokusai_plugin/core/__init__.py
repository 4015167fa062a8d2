"""Pure Hokusai domain logic: no I/O, no MLflow import.

Everything here is deterministic and testable with plain values; the services, the stores and the
server call into it.
"""
