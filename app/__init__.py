"""The Gradio studio: one module per tab. Calls studio_backend services, nothing else."""
