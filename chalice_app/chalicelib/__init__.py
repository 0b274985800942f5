"""Postbag's sender: the stages the Lambda handler in ``app.py`` wires together."""
