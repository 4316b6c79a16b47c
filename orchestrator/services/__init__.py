"""The services the CLI starts beside the store: the embedded Redis broker and Flower as a read-only monitor."""
