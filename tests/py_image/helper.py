"""Analysis-test subject: a program in the app's data (never run)."""
