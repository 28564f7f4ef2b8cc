"""Deterministic sample data (payments, settlements, vendor reports) with ground truth."""
from datagen.generator import BreakRates, GeneratedDataset, GeneratorConfig, generate

__all__ = ["BreakRates", "GeneratedDataset", "GeneratorConfig", "generate"]
