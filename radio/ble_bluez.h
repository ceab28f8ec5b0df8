/* Names shared by the two BLE halves (radio_ble.c, the observer's GATT
 * server; radio_ble_present.c, the device's central): the UUIDs of
 * OBSERVATION-CHANNEL.md section 3 and the BlueZ D-Bus names they use. */
#ifndef SRUP_BLE_BLUEZ_H
#define SRUP_BLE_BLUEZ_H

#define BLE_UUID_SERVICE "675e4787-0421-48d6-91d6-e1fa9256adc8"
#define BLE_UUID_OBSERVER_ID "c854bb5a-176d-4061-b943-540bf5542ee0"
#define BLE_UUID_CONFIRMATION "54a98014-0997-42b5-92fb-d987bd4482eb"
#define BLE_UUID_RESULT "0fac6e76-acf3-451f-9915-f51fe07097ba"

#define BLE_OBSERVER_ID_LEN 8u /* Observer ID value: SRUP ID, big-endian */

#define BLUEZ_BUS_NAME "org.bluez"
#define BLUEZ_ADAPTER_IFACE "org.bluez.Adapter1"
#define BLUEZ_DEVICE_IFACE "org.bluez.Device1"
#define BLUEZ_GATT_MANAGER_IFACE "org.bluez.GattManager1"
#define BLUEZ_GATT_SERVICE_IFACE "org.bluez.GattService1"
#define BLUEZ_GATT_CHRC_IFACE "org.bluez.GattCharacteristic1"
#define BLUEZ_ADV_MANAGER_IFACE "org.bluez.LEAdvertisingManager1"
#define BLUEZ_ADV_IFACE "org.bluez.LEAdvertisement1"

#define DBUS_OM_IFACE "org.freedesktop.DBus.ObjectManager"
#define DBUS_PROPS_IFACE "org.freedesktop.DBus.Properties"

/* BlueZ's error names (doc/gatt-api.txt), which it turns into ATT errors. */
#define BLUEZ_ERR_FAILED "org.bluez.Error.Failed"
#define BLUEZ_ERR_INVALID_VALUE_LENGTH "org.bluez.Error.InvalidValueLength"
#define BLUEZ_ERR_INVALID_OFFSET "org.bluez.Error.InvalidOffset"
#define BLUEZ_ERR_INVALID_ARGS "org.bluez.Error.InvalidArguments"
#define BLUEZ_ERR_NOT_PERMITTED "org.bluez.Error.NotPermitted"
#define BLUEZ_ERR_ALREADY_EXISTS "org.bluez.Error.AlreadyExists"
#define BLUEZ_ERR_DOES_NOT_EXIST "org.bluez.Error.DoesNotExist"

/* "/org/bluez/" + adapter name; the adapter name is at most 31 bytes. */
#define BLE_ADAPTER_PATH_MAX 64u

#endif
