"""polc simulator: populations, replay, fund-impact metrics, comparison and reports."""
