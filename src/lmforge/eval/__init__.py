"""Evaluation: generation, answer extraction, exact match."""
