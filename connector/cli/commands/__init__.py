"""The subcommands of `crm-risk`, one module per group: its arguments and its handler."""
