"""A stand-in desktop notification server on the session bus.

Owns org.freedesktop.Notifications (the freedesktop.org notification
spec's interface, with dbus-python and GLib), prints `ready` once it owns
the name, then `notify JSON` for every notification it is asked to show.
"""

import json

import dbus
import dbus.mainloop.glib
import dbus.service
from gi.repository import GLib

IFACE = "org.freedesktop.Notifications"


class Server(dbus.service.Object):
    next_id = 1

    @dbus.service.method(IFACE, in_signature="susssasa{sv}i", out_signature="u")
    def Notify(self, app, replaces, icon, summary, body, actions, hints, timeout):
        urgency = hints.get("urgency")
        print("notify", json.dumps({
            "app": str(app),
            "summary": str(summary),
            "body": str(body),
            "urgency": None if urgency is None else int(urgency),
        }), flush=True)
        self.next_id += 1
        return self.next_id

    @dbus.service.method(IFACE, out_signature="as")
    def GetCapabilities(self):
        return ["body"]

    @dbus.service.method(IFACE, out_signature="ssss")
    def GetServerInformation(self):
        return ("portwatch-test", "portwatch", "1", "1.2")

    @dbus.service.method(IFACE, in_signature="u")
    def CloseNotification(self, id):
        pass


dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
bus = dbus.SessionBus()
name = dbus.service.BusName(IFACE, bus)
Server(bus, "/org/freedesktop/Notifications")
print("ready", flush=True)
GLib.MainLoop().run()
