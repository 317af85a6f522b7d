"""Grammar of the polc policy language (policy.lark), shipped inside the wheel."""
