"""TLS on both ports: the server's certificate (reread when it changes on
disk), the TLS front of the HTTP port, and client certificates (mutual TLS)
mapped to principals."""
