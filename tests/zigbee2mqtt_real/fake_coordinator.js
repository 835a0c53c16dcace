"use strict";
// Preload for a real Zigbee2MQTT without a radio: `node --require fake_coordinator.js index.js`.
//
// Only zigbee-herdsman's adapter talks to hardware, and herdsman's controller builds it with the
// static `Adapter.create`. Replacing that one factory with a coordinator of our own keeps every
// other layer real: herdsman's request queue and response matching, the converters and
// Zigbee2MQTT's state cache, MQTT topics and error lines. The locks it plays (fake_lock.js) and
// the control socket come from `fake-coordinator.json` in the data folder, written by the tests
// (tests/zigbee2mqtt_real/stack.py), which also write a database.db declaring the locks as
// interviewed, so nothing has to join.

const fs = require("node:fs");
const net = require("node:net");
const path = require("node:path");
const {FakeLock} = require("./fake_lock.js");

// Herdsman as Zigbee2MQTT loads it (the script being run is Zigbee2MQTT's index.js), so that we
// patch the very module object its controller uses.
const fromZigbee2mqtt = (id) => require(require.resolve(id, {paths: [path.dirname(process.argv[1])]}));
const {Adapter} = fromZigbee2mqtt("zigbee-herdsman/dist/adapter/adapter.js");
const Zcl = fromZigbee2mqtt("zigbee-herdsman/dist/zspec/zcl");
const Zdo = fromZigbee2mqtt("zigbee-herdsman/dist/zspec/zdo");

const settings = JSON.parse(fs.readFileSync(path.join(process.env.ZIGBEE2MQTT_DATA, "fake-coordinator.json"), "utf8"));
const DOOR_LOCK = Zcl.Utils.getCluster("closuresDoorLock");
const LOCK_ENDPOINT = 1;

class FakeCoordinator extends Adapter {
    constructor(...args) {
        super(...args);
        this.locks = new Map(settings.locks.map((lock) => [lock.nwk, new FakeLock(lock)]));
        this.waiters = new Set(); // ZCL responses herdsman waits for: {matcher, resolve}
        this.tsn = 0; // transaction numbers of the locks' unsolicited frames
    }

    async start() {
        this.control = serveControl(this, settings.control_socket);
        return "resumed"; // the network "exists": herdsman keeps the database as it is
    }

    async stop() {
        this.control?.close();
    }

    async getCoordinatorIEEE() {
        return settings.coordinator_ieee;
    }

    async getCoordinatorVersion() {
        return {type: "lockgate fake coordinator", meta: {}};
    }

    async getNetworkParameters() {
        const {panID, extendedPanID, channelList} = this.networkOptions;
        const hex = extendedPanID.map((byte) => byte.toString(16).padStart(2, "0")).join("");
        return {panID, extendedPanID: `0x${hex}`, channel: channelList[0], nwkUpdateID: 0};
    }

    async supportsBackup() {
        return false;
    }

    async backup() {
        throw new Error("the fake coordinator keeps no backup");
    }

    async reset() {}

    async permitJoin() {}

    async addInstallCode() {
        throw new Error("nothing joins the fake coordinator");
    }

    // Bind and unbind (a reconfigure) succeed while the lock listens; anything else is unknown.
    async sendZdo(ieeeAddress, networkAddress, clusterId, payload, disableResponse) {
        const lock = this.locks.get(networkAddress);
        if (lock !== undefined && lock.drops(`zdo:${clusterId}`)) {
            await delay(settings.response_timeout_ms);
            throw new Error(`Timeout after ${settings.response_timeout_ms}ms [address=${networkAddress} clusterId=${clusterId}]`);
        }
        if (disableResponse) return undefined;
        if (clusterId === Zdo.ClusterId.BIND_REQUEST || clusterId === Zdo.ClusterId.UNBIND_REQUEST) {
            return [Zdo.Status.SUCCESS, undefined];
        }
        throw new Error(`the fake coordinator does not answer ZDO cluster ${clusterId}`);
    }

    /**
     * Herdsman's one way to talk to a device. Like a real adapter: hand the frame to the radio
     * (here the lock model), then wait for the response frame matched by herdsman's own
     * validator, or fail with herdsman's own timeout text.
     */
    async sendZclFrameToEndpoint(ieeeAddr, networkAddress, endpoint, zclFrame, timeout, disableResponse) {
        let responseId;
        if (zclFrame.command.response !== undefined && !disableResponse) {
            responseId = zclFrame.command.response;
        } else if (!zclFrame.header.frameControl.disableDefaultResponse) {
            responseId = Zcl.Foundation.defaultRsp.ID;
        }
        const matcher = {
            address: networkAddress,
            endpoint,
            clusterId: zclFrame.cluster.ID,
            commandId: responseId,
            transactionSequenceNumber: zclFrame.header.transactionSequenceNumber,
        };
        const answer = responseId === undefined ? undefined : this.expect(matcher, timeout);
        const lock = this.locks.get(networkAddress);
        if (lock !== undefined && zclFrame.cluster.ID === DOOR_LOCK.ID && zclFrame.header.isSpecific) {
            const deliver = () => {
                const frames = lock.handle(zclFrame.command.name, zclFrame.payload);
                if (frames !== null) this.transmit(lock, frames, zclFrame.header.transactionSequenceNumber);
            };
            // A slow write: the lock is still busy with it when a read right after arrives.
            const slow = zclFrame.command.name !== "getPinCode" ? lock.faults.write_delay_ms : 0;
            if (slow > 0) setTimeout(deliver, slow);
            else deliver();
        }
        return answer === undefined ? undefined : await answer.promise;
    }

    /**
     * Frames from `lock` after its delay: the first with the request's `tsn`, later ones with the
     * lock's own. A frame is [command, payload], or [command, payload, "global"] for a
     * foundation command (an attribute report).
     */
    transmit(lock, frames, tsn) {
        if (frames.length === 0 || lock.faults.silent) return;
        setTimeout(() => {
            for (const [index, [command, payload, kind]] of frames.entries()) {
                const frame = Zcl.Frame.create(
                    kind === "global" ? Zcl.FrameType.GLOBAL : Zcl.FrameType.SPECIFIC,
                    Zcl.Direction.SERVER_TO_CLIENT,
                    true,
                    undefined,
                    index === 0 && tsn !== undefined ? tsn : this.nextTsn(),
                    command,
                    DOOR_LOCK.ID,
                    payload,
                    {},
                );
                this.receive(lock, frame.toBuffer());
            }
        }, lock.faults.delay_ms);
    }

    nextTsn() {
        this.tsn = (this.tsn + 1) & 0xff;
        return this.tsn;
    }

    /** What a real adapter does with a frame off the air: answer a waiter, and tell the controller. */
    receive(lock, data) {
        const payload = {
            clusterID: DOOR_LOCK.ID,
            address: lock.nwk,
            header: Zcl.Header.fromBuffer(data),
            data,
            endpoint: LOCK_ENDPOINT,
            linkquality: 180,
            groupID: 0,
            wasBroadcast: false,
            destinationEndpoint: 1,
        };
        for (const waiter of this.waiters) {
            if (Adapter.zclWaitressValidator(payload, waiter.matcher)) {
                waiter.resolve(payload);
                break;
            }
        }
        this.emit("zclPayload", payload);
    }

    // Herdsman's own interface, for the flows that wait for a frame themselves.
    waitFor(networkAddress, endpoint, _frameType, _direction, tsn, clusterId, commandId, defaultRspCommandId, timeout) {
        const matcher = {address: networkAddress, endpoint, clusterId, commandId, defaultRspCommandId, transactionSequenceNumber: tsn};
        return this.expect(matcher, timeout);
    }

    // The tests shorten herdsman's 10 s wait (response_timeout_ms) but keep its error text.
    expect(matcher, timeout) {
        let timer;
        const waiter = {matcher};
        const promise = new Promise((resolve, reject) => {
            waiter.resolve = (payload) => {
                clearTimeout(timer);
                this.waiters.delete(waiter);
                resolve(payload);
            };
            timer = setTimeout(() => {
                this.waiters.delete(waiter);
                reject(new Error(Adapter.clusterWaitressTimeoutFormatter(matcher, timeout)));
            }, Math.min(timeout, settings.response_timeout_ms));
        });
        this.waiters.add(waiter);
        const cancel = () => {
            clearTimeout(timer);
            this.waiters.delete(waiter);
        };
        return {promise, cancel};
    }

    async sendZclFrameToGroup() {}

    async sendZclFrameToAll() {}

    async setChannelInterPAN() {
        throw new Error("no InterPAN on the fake coordinator");
    }

    async sendZclFrameInterPANToIeeeAddr() {
        throw new Error("no InterPAN on the fake coordinator");
    }

    async sendZclFrameInterPANBroadcast() {
        throw new Error("no InterPAN on the fake coordinator");
    }

    async restoreChannelInterPAN() {}
}

Adapter.create = async (...args) => new FakeCoordinator(...args);

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The tests' handle on the locks: one JSON request a line on a Unix socket, one JSON reply a
 * line. {"op": "reset" | "state" | "fault" | "keypad" | "unlock" | "operate", "lock": <friendly name>,
 * ...}.
 */
function serveControl(coordinator, socketPath) {
    fs.rmSync(socketPath, {force: true});
    const byName = (name) => {
        for (const lock of coordinator.locks.values()) if (lock.name === name) return lock;
        throw new Error(`no fake lock '${name}'`);
    };
    const ops = {
        reset: (lock, {users = {}, faults = {}}) => lock.reset(users, faults),
        state: () => {},
        fault: (lock, request) => {
            for (const key of Object.keys(request)) {
                if (key in lock.faults) lock.faults[key] = request[key];
                else if (key !== "op" && key !== "lock") throw new Error(`no fault '${key}'`);
            }
        },
        keypad: (lock, {user, pin}) => coordinator.transmit(lock, lock.keypad(user, pin)),
        unlock: (lock, {user}) => coordinator.transmit(lock, lock.unlock(user)),
        operate: (lock, {event, source, user = null, report_state = false}) =>
            coordinator.transmit(lock, lock.operate(event, source, user, report_state)),
    };
    const server = net.createServer((socket) => {
        let buffered = "";
        socket.on("data", (chunk) => {
            buffered += chunk;
            let newline = buffered.indexOf("\n");
            while (newline >= 0) {
                const line = buffered.slice(0, newline);
                buffered = buffered.slice(newline + 1);
                let reply;
                try {
                    const request = JSON.parse(line);
                    const lock = byName(request.lock);
                    ops[request.op](lock, request);
                    reply = {ok: true, ...lock.snapshot()};
                } catch (error) {
                    reply = {ok: false, error: String(error)};
                }
                socket.write(`${JSON.stringify(reply)}\n`);
                newline = buffered.indexOf("\n");
            }
        });
    });
    server.listen(socketPath);
    return server;
}
