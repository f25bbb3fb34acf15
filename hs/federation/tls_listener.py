"""The `tls: true` http listeners (the federation port: other servers always speak HTTPS).

gunicorn's TLS settings would apply to every address it binds, so these listeners are bound by
the app itself, inside the gunicorn worker and its gevent hub, with gevent's WSGI server and a
certificate from tls_certificate_path / tls_private_key_path; synctl passes gunicorn only the
plain listeners. Requests reach the same Falcon app, with the same environ keys gunicorn gives
(RAW_URI: the request target as sent, which X-Matrix signatures cover). SNI is not required:
servers send none when they dial an IP literal.
"""

import logging
import ssl

from gevent.pywsgi import WSGIHandler, WSGIServer

from hs.config import ConfigError

logger = logging.getLogger(__name__)


class _Handler(WSGIHandler):
    def get_environ(self):
        env = super().get_environ()
        env["RAW_URI"] = self.path
        return env


def server_ssl_context(certificate_path: str, private_key_path: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certificate_path, private_key_path)
    return context


def start_tls_listeners(config, app) -> list[WSGIServer]:
    """Binds and starts serving every `tls: true` http listener of `config` (a process's own
    listeners: a worker's worker_listeners). Raises OSError if an address is taken."""
    listeners = [lst for lst in config.listeners if lst.type == "http" and lst.tls]
    if not listeners:
        return []
    if not config.tls_certificate_path or not config.tls_private_key_path:
        raise ConfigError("tls_certificate_path and tls_private_key_path are required by a listener with tls: true")
    context = server_ssl_context(config.tls_certificate_path, config.tls_private_key_path)
    servers = []
    for listener in listeners:
        for address in listener.bind_addresses:
            server = WSGIServer((address, listener.port), app, ssl_context=context, handler_class=_Handler,
                                log=None, error_log=logger, spawn="default")
            server.start()
            logger.info("serving TLS on %s:%s", address, listener.port)
            servers.append(server)
    return servers
