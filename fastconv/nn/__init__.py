"""Card-1 protocol layers."""
