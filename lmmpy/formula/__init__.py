"""The formula layer: R's formula language parsed and evaluated, materialised into a design."""
