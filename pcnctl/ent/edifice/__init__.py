"""The Edifice (ex Open ENT NG) driver: authentication flows, directory, capabilities."""
