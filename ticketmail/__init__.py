"""ticketmail: the inbound mail gateway of a support ticket system."""

from ticketmail.config import Config, load_config
from ticketmail.errors import ConfigError, TicketmailError

__all__ = ["Config", "ConfigError", "TicketmailError", "load_config"]
__version__ = "0.1.0"
