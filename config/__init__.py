"""Settings (`settings`: every option, from the environment and `.env`) and logging (`logs`: one setup,
secrets redacted): what every entry point reads first. Imports only the model's plain settings (`llm.config`)."""
