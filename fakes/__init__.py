"""Stand-ins for what cannot run here, shared by the tests and the benchmarks: a local Discord server
(`discord_server`), a scripted model (`llm`) and disks that fill up or turn read-only (`disks`)."""
