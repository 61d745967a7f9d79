"""Media, framework-free: decoding uploads (images, audio), the upload marker a pipeline puts
on its request fields, and encoding generated media for the wire."""
