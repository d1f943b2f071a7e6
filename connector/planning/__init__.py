"""Pure planning: field changes, follow-up task actions and credit governance from assessments."""
