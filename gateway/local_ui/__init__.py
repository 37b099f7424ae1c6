"""The clinic staff's screen, served by the gateway on the clinic LAN: one module per page, sharing the layout
of `shell`; `screen.install` mounts them all. It works with HQ unreachable: everything it shows is local.
"""
