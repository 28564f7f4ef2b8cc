"""Three-way reconciliation (issue 21, docs/DESIGN.md 3.8): payouts against their settlement lines
(payouts.py) and against the bank credits that carry them (references.py, matching.py)."""
