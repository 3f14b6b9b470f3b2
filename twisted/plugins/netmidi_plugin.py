from twisted.application.service import ServiceMaker

netmidi = ServiceMaker("netmidi", "netmidi.tap", "Route show-control data between protocols.", "netmidi")
