"""The release pipeline: one stage contract (contract.py), the stages behind it (stages.py),
the ordered run with plan and resume (runner.py), and where each release stands (status.py)."""
