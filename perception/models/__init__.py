"""Model parts (encoders, fusion, heads) and FusionModel, which receives them already built."""
