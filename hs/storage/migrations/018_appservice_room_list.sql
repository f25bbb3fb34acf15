-- Application services' published room lists (PUT /directory/list/appservice/{networkId}/{roomId}):
-- a room can be in several services' lists, one per third-party network, besides the server's own
-- (rooms.is_public). /publicRooms reads them with third_party_instance_id or include_all_networks.
-- (Users registered by a service already carry it in users.appservice_id, from 001.)
CREATE TABLE appservice_room_list (
    appservice_id TEXT NOT NULL,
    network_id TEXT NOT NULL,
    room_id TEXT NOT NULL REFERENCES rooms (room_id) ON DELETE CASCADE,
    PRIMARY KEY (appservice_id, network_id, room_id)
);
CREATE INDEX appservice_room_list_room ON appservice_room_list (room_id);
