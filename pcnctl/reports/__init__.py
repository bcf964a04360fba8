"""What pcnctl tells people: the incident report, the affected-schools export, the cron audit, doctor."""
