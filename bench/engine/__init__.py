"""The sweep engine: runs the cases, turns failures into rows, runs the limit passes, resumes, keeps the budget.
"""
