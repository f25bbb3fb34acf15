"""GET /_matrix/client/versions."""

from hs.api.app import Resource

# The spec versions whose client-server API we serve; the README's status table says how far.
SUPPORTED_VERSIONS = ["r0.0.1", "r0.1.0", "r0.2.0", "r0.3.0", "r0.4.0", "r0.5.0", "r0.6.0", "r0.6.1",
                      "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10",
                      "v1.11", "v1.12"]
# Unstable features clients look for before using them (MSCs we implement).
UNSTABLE_FEATURES = {"org.matrix.msc3814": True}  # dehydrated devices


class VersionsResource(Resource):
    public = frozenset({"GET"})

    def on_get(self, req, resp):
        resp.media = {"versions": SUPPORTED_VERSIONS, "unstable_features": UNSTABLE_FEATURES}


def register(app, hs):
    app.add_route("/_matrix/client/versions", VersionsResource())
