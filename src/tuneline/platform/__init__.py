"""Where tuneline's pods run: GPU node pools shared by infra/, the training step and the serving chart."""
