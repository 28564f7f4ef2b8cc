"""The columnar engine for bounded input: Arrow tables as Beam elements (docs/DESIGN.md 9).

Same rules as the per-element flow in `transforms/`, vectorised: every module
here has a differential test against the per-record function it mirrors.
"""
