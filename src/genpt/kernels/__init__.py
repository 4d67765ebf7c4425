"""Fast paths and fused backends that the model uses without knowing which one ran."""
