"""Push delivery: the pusher pool, HTTP pushers (push gateways) and email pushers."""
