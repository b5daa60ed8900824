"""The executor: deployment logic that runs inside a script on the worker.

Standard library and PyYAML only, and nothing else of this project, so that it
can travel alone to a machine that has only ``python3``.
"""
