//! The EdgeX v3 API's JSON, as the real services send it (go-mod-core-
//! contracts DTOs), not only as the OpenAPI files describe it: readings
//! carry no `apiVersion`, may lack `id`, `origin` and their names, and
//! their `value` may be a string, a number or null; events carry
//! `sourceName`; `deviceCommands` may be absent. Unknown fields are
//! ignored, so a newer EdgeX adding one does not break the agent.

use serde::{Deserialize, Serialize};

use super::Error;
use super::value::ValueType;

/// A device as core-metadata describes it (the fields the agent uses).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub profile_name: String,
    pub service_name: String,
    #[serde(default)]
    pub(crate) admin_state: String,
    #[serde(default)]
    pub(crate) operating_state: String,
    #[serde(default)]
    pub labels: Vec<String>,
}

/// A device service as core-metadata lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceService {
    pub name: String,
    #[serde(default)]
    base_address: String,
    #[serde(default)]
    admin_state: String,
}

/// A device profile: the device's resources and commands.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceProfile {
    pub name: String,
    #[serde(default)]
    manufacturer: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    device_resources: Vec<DeviceResource>,
    #[serde(default)]
    device_commands: Vec<DeviceCommand>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceResource {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub(crate) is_hidden: bool,
    pub properties: ResourceProperties,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceProperties {
    pub value_type: String,
    /// `R`, `W`, `RW` (or `WR`).
    pub read_write: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub units: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    minimum: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    default_value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceCommand {
    pub name: String,
    #[serde(default)]
    pub(crate) is_hidden: bool,
    pub read_write: String,
    #[serde(default)]
    pub(crate) resource_operations: Vec<ResourceOperation>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ResourceOperation {
    pub(crate) device_resource: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    default_value: Option<String>,
}

/// Read/write permission of a resource or command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Access {
    pub(crate) read: bool,
    pub(crate) write: bool,
}

impl Access {
    pub(crate) fn parse(rw: &str) -> Result<Access, Error> {
        match rw {
            "R" => Ok(Access {
                read: true,
                write: false,
            }),
            "W" => Ok(Access {
                read: false,
                write: true,
            }),
            "RW" | "WR" => Ok(Access {
                read: true,
                write: true,
            }),
            other => Err(Error::Value(format!(
                "readWrite `{other}` is not R, W or RW"
            ))),
        }
    }
}

impl DeviceResource {
    pub fn value_type(&self) -> Result<ValueType, Error> {
        self.properties.value_type.parse()
    }

    pub(crate) fn access(&self) -> Result<Access, Error> {
        Access::parse(&self.properties.read_write)
    }
}

impl DeviceProfile {
    pub fn resource(&self, name: &str) -> Option<&DeviceResource> {
        self.device_resources.iter().find(|r| r.name == name)
    }

    pub fn command(&self, name: &str) -> Option<&DeviceCommand> {
        self.device_commands.iter().find(|c| c.name == name)
    }
}

/// One reading of an event, in any of the shapes the services send.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reading {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    device_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resource_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_name: Option<String>,
    pub value_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub units: Option<String>,
    /// A string normally; a number or array from core-data's `numeric=true`;
    /// null for a nil reading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    binary_value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    object_value: Option<serde_json::Value>,
}

/// An event: one or more readings from one device.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    device_name: String,
    #[serde(default)]
    pub profile_name: String,
    /// The command or resource read, as requested (not in the OpenAPI file).
    #[serde(default)]
    pub source_name: String,
    #[serde(default)]
    pub origin: i64,
    #[serde(default)]
    pub readings: Vec<Reading>,
}

/// Every EdgeX error (and plain success) answer. Echo's own errors (401
/// without a token, unknown routes) carry only `message`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BaseResponse {
    #[serde(default)]
    api_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
    #[serde(default)]
    message: String,
    #[serde(default)]
    status_code: u16,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_real_core_command_event_parses_with_its_quirks() {
        // As core-command answers a GET: readings without apiVersion, one
        // without id/origin/names, a null one, an object one, a binary one.
        let text = r#"{"apiVersion":"v3","statusCode":200,"event":{"apiVersion":"v3",
            "id":"6e9d5a8e-7c47-4c6a-9d4f-0d1f2b6c7a10","deviceName":"Random-Integer-Device",
            "profileName":"Random-Integer-Device","sourceName":"Int8","origin":1732450000000000000,
            "readings":[
              {"id":"0b0a7c2e-1111-4c6a-9d4f-0d1f2b6c7a10","origin":1732450000000000000,
               "deviceName":"Random-Integer-Device","resourceName":"Int8",
               "profileName":"Random-Integer-Device","valueType":"Int8","value":"-42"},
              {"valueType":"Float32","value":"2.85e+01"},
              {"resourceName":"Int16","valueType":"Int16","value":null,"binaryValue":null,"objectValue":null},
              {"resourceName":"Object","valueType":"Object","objectValue":{"key1":"value1","key2":123}},
              {"resourceName":"Binary","valueType":"Binary","binaryValue":"AAEC","mediaType":"random"}
            ]}}"#;
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        let e: Event = serde_json::from_value(v["event"].clone()).unwrap();
        assert_eq!(e.source_name, "Int8");
        assert_eq!(e.readings.len(), 5);
        assert_eq!(e.readings[0].value, Some(serde_json::json!("-42")));
        assert_eq!(e.readings[1].id, None);
        assert_eq!(e.readings[2].value, None, "null value");
        assert_eq!(e.readings[3].object_value.as_ref().unwrap()["key2"], 123);
        assert_eq!(e.readings[4].media_type.as_deref(), Some("random"));
    }

    #[test]
    fn a_device_virtual_profile_parses_and_answers_questions() {
        let text = r#"{"name":"Random-Integer-Device","manufacturer":"IOTech","model":"Device-Virtual-01",
            "labels":["device-virtual-example"],"unknownField":1,
            "deviceResources":[
              {"name":"Int8","isHidden":false,"properties":{"valueType":"Int8","readWrite":"RW","defaultValue":"0"}},
              {"name":"EnableRandomization_Int8","isHidden":true,"properties":{"valueType":"Bool","readWrite":"W","defaultValue":"true"}}],
            "deviceCommands":[{"name":"WriteInt8Value","isHidden":false,"readWrite":"W",
              "resourceOperations":[{"deviceResource":"Int8"},{"deviceResource":"EnableRandomization_Int8","defaultValue":"false"}]}]}"#;
        let p: DeviceProfile = serde_json::from_str(text).unwrap();
        let r = p.resource("Int8").unwrap();
        assert_eq!(r.value_type().unwrap(), ValueType::Int(8));
        assert_eq!(
            r.access().unwrap(),
            Access {
                read: true,
                write: true
            }
        );
        assert!(p.resource("EnableRandomization_Int8").unwrap().is_hidden);
        assert_eq!(
            p.command("WriteInt8Value")
                .unwrap()
                .resource_operations
                .len(),
            2
        );
        assert!(Access::parse("X").is_err());
        // deviceCommands may be absent (profiles with none).
        let p: DeviceProfile =
            serde_json::from_str(r#"{"name":"p","deviceResources":[]}"#).unwrap();
        assert!(p.device_commands.is_empty());
    }

    #[test]
    fn echo_errors_have_only_a_message() {
        let e: BaseResponse = serde_json::from_str(r#"{"message":"Unauthorized"}"#).unwrap();
        assert_eq!((e.message.as_str(), e.status_code), ("Unauthorized", 0));
        let e: BaseResponse = serde_json::from_str(
            r#"{"apiVersion":"v3","message":"no device with name 'X' found","statusCode":404}"#,
        )
        .unwrap();
        assert_eq!(e.status_code, 404);
    }
}
