"""The composition root: the command line, the server and the download CLI. The only
package that may import every layer; it builds the core and hands it to the faces."""
