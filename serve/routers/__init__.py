"""One APIRouter per resource of the Orchestrator (STYLE §6.11)."""
