"""metrics-poller: Azure Monitor metrics for Azure OpenAI, into Elasticsearch."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("metrics-poller")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"
