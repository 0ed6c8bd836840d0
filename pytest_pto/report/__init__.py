"""The report wing (its public surface follows in the next commit)."""
