"""The homeserver's logic; SQL stays in hs.storage, HTTP in hs.api."""
