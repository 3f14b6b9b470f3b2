"""Sans-IO session state machines: they are told the time and say what to send."""
