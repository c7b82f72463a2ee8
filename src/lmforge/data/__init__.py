"""Data: sources -> conversations -> prompt formats -> tokens with label masks."""
