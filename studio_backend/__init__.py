"""State and orchestration of the studio: ORM models, services, job worker, arena
statistics, model registry and media store. Never imports gradio."""
