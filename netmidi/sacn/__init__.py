"""sACN session logic that is neither wire format nor socket: merging receivers, send scheduling."""
