"""Persistent state behind one interface: embedded SQLite by default, PostgreSQL for fleets."""
