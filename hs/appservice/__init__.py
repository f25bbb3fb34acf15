"""Application services: registrations, and (with their issue) transactions and queries."""
