"""The five services of the online school; each owns its database and migration history."""
