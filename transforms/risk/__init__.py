"""Risk decisions on authorization attempts: rules as data, per-event windows (docs/DESIGN.md 10)."""
