"""Checking a dataset: validation rules and their driver, preview sheets, statistics."""
